"""Accelerator beam simulation on cheetah: lattice files, batched models, machine errors.

(Work in progress: the full API is documented here once the machine layer lands.)
"""
