"""Start and stop a ZEO server process (Python's runzeo or bbru-zeo) for tests.

    from server import start_server, server_kind
    srv = start_server(server_kind(), '/tmp/x/Data.fs')  # or 'python'
    ClientStorage(srv.address, '1', wait=1, wait_timeout=30)
    ...
    srv.stop()          # SIGTERM, wait, SIGKILL after 10 s
    srv.kill9()         # SIGKILL right away (crash simulation)

Used by test_zodb_storage_suites.py and test_zodb_app.py (run by
run_suites.py), which the Rust side's interop tests / CI run with
ZEO_SERVER_KIND=bbru and BBRU_ZEO=/abs/path/to/bbru-zeo, and which run
against Python's own server (ZEO_SERVER_KIND=python, the default) as the
baseline.

Kinds:

  python  sys.executable -m ZEO.runzeo -C CONF, where CONF (written next to
          the Data.fs as <data_fs>.zeo.conf) is the equivalent of
          `runzeo -a 127.0.0.1:PORT -f DATA_FS` plus
          `client-conflict-resolution true` (bbru-zeo only implements that
          mode: conflicts go back to the client, which resolves them) and
          `read-only true` when read_only is set. runzeo has no command-line
          switch for either, hence the config file.
  bbru    $BBRU_ZEO serve -a 127.0.0.1:PORT -f DATA_FS [-r]
          ($BBRU_ZEO must be an absolute path to the bbru-zeo binary).
  bbru-pg $BBRU_ZEO serve -C CONF on a PostgreSQL database instead of
          DATA_FS: a fresh database created for the server on the server
          $BBRU_PG_URL names (dropped when the server stops), given in CONF
          as RelStorage spells it (<relstorage> <postgresql> dsn URL), which
          creates the schema; with a blob directory, blobs are kept in the
          database and the directory is the server's cache. No TLS.

With ssl=True either serves TLS with ZEO 6.2's own test certificates
(ZEO.tests.testssl: server.pem/server_key.pem, client certificates checked
against client.pem), as ZEO's FileStorageSSLTests configures its server:
an <ssl> section in runzeo's zeo.conf, --ssl-* flags for bbru-zeo.

extra_args are appended to the command line of either kind. The server's
stdout and stderr go to <data_fs>.server.log; Server.log() returns it and
start-up failures include it.
"""
import os
import signal
import socket
import subprocess
import sys
import time

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
KINDS = ('python', 'bbru', 'bbru-pg')


def server_kind():
    """The server kind to test: env ZEO_SERVER_KIND, default python."""
    kind = os.environ.get('ZEO_SERVER_KIND', 'python')
    if kind not in KINDS:
        raise ValueError(
            f'ZEO_SERVER_KIND must be one of {KINDS}, not {kind!r}')
    return kind


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Server:
    """A running server process listening on `address` ('127.0.0.1', port)."""

    def __init__(self, process, address, log_path, cleanup=None):
        self.process = process
        self.address = address
        self.log_path = log_path
        # Called once the process has exited (drops a bbru-pg database).
        self.cleanup = cleanup

    def _exited(self, code):
        if self.cleanup is not None:
            cleanup, self.cleanup = self.cleanup, None
            cleanup()
        return code

    def log(self):
        """Everything the server wrote to stdout/stderr so far."""
        with open(self.log_path, encoding='utf-8', errors='replace') as f:
            return f.read()

    def stop(self):
        """SIGTERM, wait up to 10 s, then SIGKILL. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self._exited(self.process.wait())

    def kill9(self):
        """SIGKILL the server (no clean shutdown) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        return self._exited(self.process.wait())


def _ssl_files():
    import ZEO.tests.testssl as testssl
    return testssl.server_cert, testssl.server_key, testssl.client_cert


def _python_command(address, data_fs, read_only, ssl=False, blob_dir=None):
    conf_path = data_fs + '.zeo.conf'
    # ZConfig takes a '#' after a value as part of it: no inline comments.
    lines = [
        '<zeo>',
        f'  address {address[0]}:{address[1]}',
        '  client-conflict-resolution true',
    ]
    if read_only:
        lines.append('  read-only true')
    if ssl:
        cert, key, authenticate = _ssl_files()
        lines += ['  <ssl>', f'    certificate {cert}', f'    key {key}',
                  f'    authenticate {authenticate}', '  </ssl>']
    lines += ['</zeo>', '<filestorage 1>', f'  path {data_fs}']
    if blob_dir:
        lines.append(f'  blob-dir {blob_dir}')
    lines += ['</filestorage>', '']
    with open(conf_path, 'w') as f:
        f.write('\n'.join(lines))
    return [sys.executable, '-m', 'ZEO.runzeo', '-C', conf_path]


def _bbru_command(address, data_fs, read_only, ssl=False, blob_dir=None):
    exe = os.environ.get('BBRU_ZEO')
    if not exe or not os.path.isabs(exe) or not os.access(exe, os.X_OK):
        raise RuntimeError(
            'ZEO server kind "bbru" needs env BBRU_ZEO = absolute path of an '
            f'executable bbru-zeo binary (got {exe!r})')
    command = [exe, 'serve', '-a', f'{address[0]}:{address[1]}',
               '-f', data_fs]
    if read_only:
        command.append('-r')
    if blob_dir:
        command += ['--blob-dir', blob_dir]
    if ssl:
        cert, key, authenticate = _ssl_files()
        command += ['--ssl-certificate', cert, '--ssl-key', key,
                    '--ssl-authenticate', authenticate]
    return command


_databases = 0


def _fresh_database():
    """A new empty database on the server $BBRU_PG_URL names: its URL, and
    what drops it."""
    global _databases
    import psycopg2
    admin_url = os.environ.get('BBRU_PG_URL')
    if not admin_url:
        raise RuntimeError('ZEO server kind "bbru-pg" needs env BBRU_PG_URL')
    _databases += 1
    name = f'bbru_pysuite_{os.getpid()}_{_databases}'

    def admin(statement):
        conn = psycopg2.connect(admin_url)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    admin(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
    admin(f'CREATE DATABASE {name}')
    base, _, query = admin_url.partition('?')
    scheme, _, rest = base.partition('://')
    url = f'{scheme}://{rest.split("/", 1)[0]}/{name}'
    if query:
        url += '?' + query
    return url, lambda: admin(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')


def _bbru_pg_command(address, data_fs, read_only, url, blob_dir=None):
    exe = os.environ.get('BBRU_ZEO')
    if not exe or not os.path.isabs(exe) or not os.access(exe, os.X_OK):
        raise RuntimeError(
            'ZEO server kind "bbru-pg" needs env BBRU_ZEO = absolute path of '
            f'an executable bbru-zeo binary (got {exe!r})')
    conf_path = data_fs + '.zeo.conf'
    lines = ['<zeo>', f'  address {address[0]}:{address[1]}']
    if read_only:
        lines.append('  read-only true')
    lines += ['</zeo>', '<relstorage 1>']
    if blob_dir:
        # Blobs in the database, the directory the server's cache of them.
        lines += [f'  blob-dir {blob_dir}', '  shared-blob-dir false']
    lines += ['  <postgresql>', f'    dsn {url}', '  </postgresql>',
              '</relstorage>', '']
    with open(conf_path, 'w') as f:
        f.write('\n'.join(lines))
    return [exe, 'serve', '-C', conf_path]


def _accepts_connections(address):
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def start_server(kind, data_fs, *, read_only=False, extra_args=(),
                 ssl=False, blob_dir=None):
    """Start a server of `kind` on a free port serving FileStorage `data_fs`
    as storage '1' (with blob directory `blob_dir`, if given); return once
    the port accepts connections."""
    if kind not in KINDS:
        raise ValueError(f'unknown server kind {kind!r}; use one of {KINDS}')
    data_fs = os.path.abspath(data_fs)
    address = ('127.0.0.1', free_port())
    cleanup = None
    if kind == 'bbru-pg':
        if ssl:
            raise ValueError('bbru-pg serves no TLS here')
        url, cleanup = _fresh_database()
        command = _bbru_pg_command(address, data_fs, read_only, url, blob_dir)
    else:
        make_command = (_python_command if kind == 'python'
                        else _bbru_command)
        command = make_command(address, data_fs, read_only, ssl, blob_dir)
    command += list(extra_args)
    log_path = data_fs + '.server.log'
    with open(log_path, 'ab') as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, cwd=os.path.dirname(data_fs))
    server = Server(process, address, log_path, cleanup)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not _accepts_connections(address):
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(
                f'{command} exited with code {process.returncode} before '
                f'listening on {address}; its output:\n{server.log()}')
        if time.monotonic() > deadline:
            server.kill9()
            raise RuntimeError(
                f'{command} did not listen on {address} within '
                f'{STARTUP_TIMEOUT:.0f} s; its output:\n{server.log()}')
        time.sleep(0.05)
    return server
