"""The one shared pass over the image set: planning, the scan, its records, the row store, torchrun."""
