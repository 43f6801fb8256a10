"""Throughput and scaling measurements (`make bench`); not part of `make test`."""
