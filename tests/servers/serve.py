"""What the test servers share: announce the port (READY <port> on stdout, which the harness
waits for) and serve until interrupted."""


def serve(srv):
    print("READY %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0
