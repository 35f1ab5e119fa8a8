"""Tests of the CAS client and the CAS emulator, over loopback HTTP."""
