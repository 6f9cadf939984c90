"""Run the ZEO interop test modules of this directory and print a summary.

    python tests/python/zeo/run_suites.py [MODULE ...] [-k PATTERN]
                                          [--list] [--failfast]

MODULE is a test module of this directory, with or without .py:
test_zodb_storage_suites (ZODB's and ZEO's storage test mixins over
ClientStorage) and/or test_zodb_app (application-level interop through
ZODB.DB); default: both. test_blob_doctests (ZODB's reusable blob suite of
doctests, in both blob modes) runs only when named. -k PATTERN (repeatable) keeps the tests whose
full id contains PATTERN (a substring, or an fnmatch pattern with
wildcards; unittest's -k semantics). --list prints the selected test ids
and runs nothing. --failfast stops at the first failure or error (the
summary then counts only the tests run).

The server under test is chosen by env ZEO_SERVER_KIND: 'python' (default,
ZEO 6.2's runzeo from the running interpreter's environment) or 'bbru'
(env BBRU_ZEO = absolute path of the bbru-zeo binary); see server.py. Run
it with the venv python of tools/python-env.sh. The Rust interop tests / CI
run it with ZEO_SERVER_KIND=bbru and check its exit code.

Each test's outcome and duration is printed as it finishes; the last line
is exactly `N passed, M failed` (`, K skipped` appended when tests were
skipped). Errors and unexpected successes count as failed, expected
failures as passed. Exit code 0 iff nothing failed and at least one test
ran.
"""
import argparse
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = ('test_zodb_storage_suites', 'test_zodb_app')


class TimedResult(unittest.TextTestResult):
    """Appends each test's wall time to the verbose outcome line."""

    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def _outcome(self, word):
        if self.showAll:
            self.stream.writeln(
                f'{word} ({time.monotonic() - self._started:.2f}s)')
            self.stream.flush()
        elif self.dots:
            self.stream.write(word[0] if word != 'ok' else '.')
            self.stream.flush()

    def addSuccess(self, test):
        unittest.TestResult.addSuccess(self, test)
        self._outcome('ok')

    def addError(self, test, err):
        unittest.TestResult.addError(self, test, err)
        self._outcome('ERROR')

    def addFailure(self, test, err):
        unittest.TestResult.addFailure(self, test, err)
        self._outcome('FAIL')

    def addSkip(self, test, reason):
        unittest.TestResult.addSkip(self, test, reason)
        self._outcome(f'skipped {reason!r}')

    def addExpectedFailure(self, test, err):
        unittest.TestResult.addExpectedFailure(self, test, err)
        self._outcome('expected failure')

    def addUnexpectedSuccess(self, test):
        unittest.TestResult.addUnexpectedSuccess(self, test)
        self._outcome('unexpected success')


def iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


def main():
    parser = argparse.ArgumentParser(
        description='Run the ZEO interop tests against ZEO_SERVER_KIND.')
    parser.add_argument('modules', nargs='*', metavar='MODULE',
                        help=f'test modules (default: {" ".join(MODULES)})')
    parser.add_argument('-k', dest='patterns', action='append',
                        metavar='PATTERN', help='only tests matching PATTERN')
    parser.add_argument('--list', action='store_true',
                        help='print the selected test ids, run nothing')
    parser.add_argument('--failfast', action='store_true',
                        help='stop at the first failure or error')
    args = parser.parse_args()

    modules = [m[:-3] if m.endswith('.py') else m for m in args.modules]
    for name in modules:
        if not os.path.isfile(os.path.join(HERE, name + '.py')):
            parser.error(f'no test module {name}.py in {HERE}')
    sys.path.insert(0, HERE)
    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = [
            p if '*' in p else f'*{p}*' for p in args.patterns]
    suite = unittest.TestSuite(
        loader.loadTestsFromName(name) for name in modules or MODULES)
    if loader.errors:
        for error in loader.errors:
            print(error, file=sys.stderr)
        return 1

    if args.list:
        for test in iter_tests(suite):
            print(test.id())
        return 0

    started = time.monotonic()
    result = unittest.TextTestRunner(
        stream=sys.stdout, verbosity=2, resultclass=TimedResult,
        failfast=args.failfast).run(suite)
    failed = (len(result.failures) + len(result.errors)
              + len(result.unexpectedSuccesses))
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f'{os.environ.get("ZEO_SERVER_KIND", "python")} server, '
          f'{time.monotonic() - started:.1f} s')
    summary = f'{passed} passed, {failed} failed'
    if skipped:
        summary += f', {skipped} skipped'
    print(summary)
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == '__main__':
    sys.exit(main())
