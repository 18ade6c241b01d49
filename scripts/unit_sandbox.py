#!/usr/bin/env python3
"""Runs a command inside what docs/deploy/cloudtrailbeat.service forbids, as far as a process can forbid
it to itself without systemd: for the tests (PackageTests), where systemd is not PID 1.

  unit_sandbox.py UNIT_FILE COMMAND [ARG...]

From the unit it takes SystemCallFilter= (expanded with `systemd-analyze syscall-filter`; a refused call
fails with SystemCallErrorNumber=, or kills the process without it, as systemd does), SystemCallArchitectures=native,
RestrictAddressFamilies= (other families fail with EAFNOSUPPORT, as systemd does),
MemoryDenyWriteExecute= (the kernel's PR_SET_MDWE, which refuses what systemd's seccomp filter refuses:
a writable and executable mapping, making a mapping executable), NoNewPrivileges= and LimitCORE=. Then
it checks that they hold (a refused call, a refused family, a refused W+X mapping) and runs COMMAND.

x86_64 only (system call numbers from asm/unistd_64.h): exits 77 elsewhere, or when the kernel refuses
the seccomp filter. Without PR_SET_MDWE (before Linux 6.3) it says so and runs without W^X memory.
"""
import ctypes, errno, os, platform, re, resource, socket, struct, subprocess, sys

if platform.machine() != "x86_64" or len(sys.argv) < 3:
    print("unit_sandbox.py: x86_64 only; usage: unit_sandbox.py UNIT_FILE COMMAND [ARG...]", file=sys.stderr)
    sys.exit(77)

unit = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line and not line.startswith(("#", "[")) and "=" in line:
        key, value = line.split("=", 1)
        unit.setdefault(key, []).append(value)

def expand(name, seen=None):
    """A system call group (@name) as the set of calls systemd puts in it."""
    if not name.startswith("@"):
        return {name}
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True).stdout
    calls = set()
    for entry in out.splitlines()[1:]:
        entry = entry.strip()
        if entry and not entry.startswith("#"):
            calls |= expand(entry)
    return calls

# SystemCallFilter=: the first line sets an allow list (or a deny list with ~); later lines add to or
# take from it, as systemd reads them.
allowed = None
for value in unit.get("SystemCallFilter", []):
    deny = value.startswith("~")
    names = set()
    for word in value.lstrip("~").split():
        names |= expand(word)
    if allowed is None:
        if deny:
            sys.exit("unit_sandbox.py: a deny-list filter is not emulated")
        allowed = names
    elif deny:
        allowed -= names
    else:
        allowed |= names
# A refused call fails with SystemCallErrorNumber=; without it systemd kills the process (SIGSYS).
error_name = (unit.get("SystemCallErrorNumber") or [None])[-1]
error_number = getattr(errno, error_name) if error_name else None
families = {getattr(socket, f) for v in unit.get("RestrictAddressFamilies", []) for f in v.split()}

numbers = {}
for line in open("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"):
    m = re.match(r"#define __NR_(\w+)\s+(\d+)", line)
    if m:
        numbers[m.group(1)] = int(m.group(2))
allowed_numbers = sorted(numbers[n] for n in allowed if n in numbers)

# The seccomp program (classic BPF over struct seccomp_data: nr at 0, arch at 4, args from 16).
LD, JEQ, RET = 0x20, 0x15, 0x06
ALLOW, ERRNO, KILL = 0x7FFF0000, 0x00050000, 0x80000000
REFUSE = ERRNO | error_number if error_number else KILL
program = []
def op(code, k, jt=0, jf=0):
    program.append(struct.pack("HBBI", code, jt, jf, k))
op(LD, 4)
op(JEQ, 0xC000003E, 1, 0)                      # AUDIT_ARCH_X86_64: SystemCallArchitectures=native
op(RET, REFUSE)
op(LD, 0)
if families:
    # socket(2): its family (the low word of args[0]) must be one the unit allows.
    op(JEQ, numbers["socket"], 0, 2 + 2 * len(families))
    op(LD, 16)
    for family in sorted(families):
        op(JEQ, family, 0, 1)
        op(RET, ALLOW)
    op(RET, ERRNO | errno.EAFNOSUPPORT)
for number in allowed_numbers:
    op(JEQ, number, 0, 1)
    op(RET, ALLOW)
op(RET, REFUSE)

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, PR_SET_MDWE = 38, 22, 2, 65

class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

if "LimitCORE" in unit:
    limit = 0 if unit["LimitCORE"][-1] == "0" else resource.RLIM_INFINITY
    resource.setrlimit(resource.RLIMIT_CORE, (limit, limit))
mdwe = unit.get("MemoryDenyWriteExecute", ["false"])[-1] in ("true", "yes")
if mdwe and libc.prctl(PR_SET_MDWE, 1, 0, 0, 0) != 0:
    print("unit_sandbox.py: this kernel has no PR_SET_MDWE (Linux 6.3): W^X memory is not emulated", file=sys.stderr)
    mdwe = False
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
    sys.exit("unit_sandbox.py: PR_SET_NO_NEW_PRIVS failed")
code = b"".join(program)
buffer = ctypes.create_string_buffer(code)
fprog = SockFprog(len(program), ctypes.cast(buffer, ctypes.c_void_p))
if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
    print("unit_sandbox.py: the kernel refused the seccomp filter (errno %d)" % ctypes.get_errno(), file=sys.stderr)
    sys.exit(77)

# They hold: a privileged call fails, a refused family fails, a W+X mapping fails.
checks = []
if error_number and "setuid" not in allowed and (libc.setuid(os.getuid()) == 0 or ctypes.get_errno() != error_number):
    checks.append("setuid (harmless: to the same user) was not refused with %s" % error_name)
if families and socket.AF_NETLINK not in families:
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        checks.append("an AF_NETLINK socket was allowed")
    except OSError as e:
        if e.errno != errno.EAFNOSUPPORT:
            checks.append("AF_NETLINK failed with %d, not EAFNOSUPPORT" % e.errno)
if mdwe:
    if libc.mmap(None, 4096, 7, 0x22, -1, 0) not in (None, ctypes.c_void_p(-1).value):
        checks.append("a writable and executable mapping was allowed")
if checks:
    sys.exit("unit_sandbox.py: " + "; ".join(checks))
print("unit_sandbox.py: %d system calls allowed, address families %s, W^X memory %s" % (len(allowed_numbers), sorted(int(f) for f in families), "on" if mdwe else "off"), file=sys.stderr)
os.execv(sys.argv[2], sys.argv[2:])
