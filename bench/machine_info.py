"""What the benchmark runners record about the machine (imported by the
Python snippets in bench/run.sh and bench/zeo/run.sh)."""
import platform
import subprocess


def run(*cmd):
    """A command's output, or 'unknown (why)' when it cannot run."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        return f'unknown ({e})'


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def mem():
    try:
        with open('/proc/meminfo') as f:
            kb = int(f.readline().split()[1])
        return f'{kb / 1024 / 1024:.1f} GiB'
    except (OSError, ValueError, IndexError):
        return 'unknown'
