"""Built-in tools agents may be given. One module per tool behind `base.Tool`."""
