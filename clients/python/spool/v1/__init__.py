"""The contract's generated messages and stubs (queue_pb2, queue_pb2_grpc), made from
proto/spool/v1/queue.proto when the package is built; import them for what the library does
not wrap."""
