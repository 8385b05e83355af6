"""The host link (docs/link.md): framed commands and data over a byte stream."""
