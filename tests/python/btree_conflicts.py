"""A Python ZODB client changing the OOBTree `root[NAME]` (and the Length
`root['count']`) of a ZEO server alongside a Rust client, for the interop tests of
crates/zodb/tests/persistence/btree_interop.rs.

argv[1]: the server address (HOST:PORT); argv[2]: the root key of the tree.  Commands on stdin, one per line; one answer
line each on stdout:

  insert KEY VALUE   one transaction setting tree[KEY] = VALUE    -> ok | conflict
  stage KEY VALUE    a new transaction setting it, left open      -> staged
  commit             commits the open transaction                 -> ok | conflict
  burst PREFIX N T   T transactions, each adding 1 to the count, the first N also
                     inserting PREFIX-i; 3 ms apart, no retry
                                                      -> started, then done CONFLICTS
  check              the tree as a new transaction reads it        -> JSON
  quit

No transaction is ever retried: a ConflictError is reported as `conflict`.
"""

import json
import sys
import time

import transaction
from BTrees.check import check
from ZEO.ClientStorage import ClientStorage
from ZODB import DB
from ZODB.POSException import ConflictError


def main():
    host, port = sys.argv[1].rsplit(':', 1)
    storage = ClientStorage((host, int(port)), wait_timeout=30)
    db = DB(storage)
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(tm)

    def tree():
        return conn.root()[sys.argv[2]]

    def commit():
        try:
            tm.commit()
            return 'ok'
        except ConflictError as e:
            tm.abort()
            return 'conflict %s' % type(e).__name__

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command = words[0]
        if command == 'insert':
            tm.begin()
            tree()[words[1]] = words[2]
            answer = commit()
        elif command == 'stage':
            tm.begin()
            tree()[words[1]] = words[2]
            answer = 'staged'
        elif command == 'commit':
            answer = commit()
        elif command == 'burst':
            print('started', flush=True)
            conflicts = 0
            for i in range(int(words[3])):
                tm.begin()
                if i < int(words[2]):
                    tree()['%s-%03d' % (words[1], i)] = 'python'
                conn.root()['count'].change(1)
                if commit() != 'ok':
                    conflicts += 1
                # Paced as the Rust side is (BURST_PAUSE there).
                time.sleep(0.003)
            answer = 'done %d' % conflicts
        elif command == 'check':
            tm.begin()
            t = tree()
            problems = []
            try:
                check(t)
                t._check()
            except AssertionError as e:
                problems.append(str(e))
            answer = json.dumps({
                'class': '%s.%s' % (type(t).__module__, type(t).__name__),
                'items': dict(t.items()),
                'count': conn.root()['count'](),
                'problems': problems,
            })
            tm.abort()
        elif command == 'quit':
            break
        else:
            answer = 'unknown command %r' % command
        print(answer, flush=True)
    conn.close()
    db.close()


if __name__ == '__main__':
    main()
