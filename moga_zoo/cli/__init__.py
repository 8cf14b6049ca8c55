"""Thin command lines over the library: they parse, call one function, and print."""
