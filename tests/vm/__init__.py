"""Tests that boot the Debian 12 test image under qemu (markers: vm, slow)."""
