"""The benchmark runner and command line, built on `idard.measure`."""
