"""Dataset adapters: raw files on disk -> validated signals in mV + a metadata/label table."""
