"""What goes over the wire: HTTP/2 and gRPC (the sans-IO h2wire.py and the h2c.py connection), HTTP/1.1,
protobuf, the TLS relay, the first-bytes sniff, and the safety check every request passes."""
