"""A Python ZEO ClientStorage over TLS: commit, then read back on a new connection.

    python zeo_tls_client.py HOST:PORT CA SERVER_HOSTNAME [CERT KEY] VALUE

Trusts the CA file, checks the server's certificate against SERVER_HOSTNAME, and
presents CERT/KEY when given (for a server that authenticates clients).  Stores
root['tls'] = VALUE, closes, opens a second client and prints what it loads:
`loaded VALUE`.  When the server refuses the connection, prints `refused: ...` and
exits 3 (the Rust test tells a refusal from a failure by that).
"""
import ssl
import sys

import transaction
import ZEO
from ZEO.Exceptions import ClientDisconnected


def context(ca, cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def open_db(addr, ctx, hostname):
    return ZEO.DB(addr, wait_timeout=5, ssl=ctx, ssl_server_hostname=hostname)


def main(argv):
    if len(argv) == 4:
        addr, ca, hostname, value = argv
        cert = key = None
    elif len(argv) == 6:
        addr, ca, hostname, cert, key, value = argv
    else:
        sys.exit(__doc__)
    host, port = addr.rsplit(':', 1)
    addr = (host, int(port))
    ctx = context(ca, cert, key)
    try:
        db = open_db(addr, ctx, hostname)
    except ClientDisconnected as e:
        print(f'refused: {e}')
        sys.exit(3)
    conn = db.open()
    conn.root()['tls'] = value
    transaction.commit()
    conn.close()
    db.close()

    db = open_db(addr, ctx, hostname)
    conn = db.open()
    print(f"loaded {conn.root()['tls']}")
    conn.close()
    db.close()


if __name__ == '__main__':
    main(sys.argv[1:])
