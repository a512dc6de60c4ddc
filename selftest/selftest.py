#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""samba-async-vfs selftest: unit tests, slowfs tests, our own smbd tests
and smbtorture suites on every environment of one private smbd.

Rules (see selftest/README.md):
- a test that passes on the default environment and fails on another
  environment is a failure, never a known failure;
- known failures of the default environment are listed, with the reason,
  in selftest/knownfail; a listed test that passes is reported and fails
  the run;
- selftest/flapping lists timing-dependent tests (with the reason) whose
  failure is reported but not counted on any environment;
- any smbd panic or core file fails the run;
- with a sanitized build (make test SANITIZE=1, make test-sanitize), smbd
  runs with the ASan and UBSan runtimes preloaded and any report of a
  sanitizer fails the run (sanitizer.<part>), its first lines printed.
Ends with the line "N passed, N failed, N skipped".
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import brl_tests  # noqa: E402
import build_tests  # noqa: E402
import client_tests  # noqa: E402
import cluster_tests  # noqa: E402
import dosattr_tests  # noqa: E402
import escape_tests  # noqa: E402
import fault_tests  # noqa: E402
import harness  # noqa: E402
import identity_tests  # noqa: E402
import inflight_tests  # noqa: E402
import listing_tests  # noqa: E402
import open_tests  # noqa: E402
import package_tests  # noqa: E402
import posix_tests  # noqa: E402
import slowfs_identity_tests  # noqa: E402
import smbd_tests  # noqa: E402
import testlib  # noqa: E402
import uring_tests  # noqa: E402
from testlib import (judge, match, parse_subunit,  # noqa: E402
                     read_patterns)

HERE = os.path.dirname(os.path.abspath(__file__))

# Test files (selftest/README.md): those with tests on the shared smbd of
# the environments (part "smbd": their table SHARED), those that start
# smbds of their own with other settings (part "faults": their SERVERS),
# and those whose SERVERS are CTDB clusters (part "cluster").  One line
# per file; a file may be in the first two.
SHARED_SMBD_TESTS = [
    smbd_tests,
    listing_tests,
    client_tests,
]
OWN_SMBD_TESTS = [
    identity_tests,
    fault_tests,
    dosattr_tests,
    listing_tests,
    brl_tests,
    open_tests,
    escape_tests,
    inflight_tests,
    posix_tests,
    uring_tests,
    slowfs_identity_tests,
]
CLUSTER_TESTS = [
    cluster_tests,
]
PARTS = ['build', 'unit', 'slowfs', 'smbd', 'faults', 'torture', 'bench',
         'package', 'cluster']
# smbtorture suites: the quick set (every environment), the full set
# (--full) and those not run, each with the reason
QUICK_LIST = 'tests.list'
FULL_LIST = 'tests-full.list'
NOT_RUN_LIST = 'tests-not-run.list'
# Where the full list runs: each of our modules alone and in its other
# modes, the full stack with its defaults and with every asynchronous path
# forced on.  Samba's own modules and the ABI canary run the quick list.
FULL_SET_ENVS = ['default', 'full_stack', 'full_stack_async', 'async_uring',
                 'async_xattr', 'async_dosattr', 'async_dosattr_sync',
                 'async_dosattr_prefetch', 'async_brl', 'async_brl_decide',
                 'async_open']
# raw.* and base.* speak SMB1
SMBD_GLOBAL = {'server min protocol': 'NT1'}


class Results:
    def __init__(self, knownfail=()):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.lines = []
        # our own tests' known failures on this Samba release
        self.knownfail = knownfail

    def add(self, status, name, detail=''):
        why = match(self.knownfail, name)
        if why and status == 'fail':
            status, detail = 'knownfail', why
        elif why and status == 'pass':
            status, detail = 'fail', 'unexpected success; listed: ' + why
        if status == 'pass':
            self.passed += 1
        elif status in ('skip', 'knownfail'):
            self.skipped += 1
        else:
            self.failed += 1
        line = '%s: %s%s' % (status, name, (' (%s)' % detail) if detail
                             else '')
        self.lines.append(line)
        if status != 'pass':
            print(line, flush=True)


def run_unit_tests(res, bindir):
    unitdir = os.path.join(bindir, 'selftest', 'unit')
    if not os.path.isdir(unitdir):
        res.add('fail', 'unit', 'no unit tests built (cmocka missing?)')
        return
    env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT='SUBUNIT')
    logdir = os.path.join(bindir, 'selftest-results', 'sanitizer-unit')
    if harness.SANITIZER_RUNTIMES:
        env.update(harness.sanitizer_env(logdir))
    for prog in sorted(os.listdir(unitdir)):
        path = os.path.join(unitdir, prog)
        if not (prog.startswith('test_') and os.access(path, os.X_OK)):
            continue
        p = subprocess.run(harness.runtime_cmd([path]),
                           stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=env,
                           universal_newlines=True, timeout=300)
        if harness.SANITIZER_RUNTIMES:
            harness.collect_sanitizer_reports(logdir, 'unit.' + prog, prog)
            harness.SANITIZER_REPORTS.extend(
                ('unit.' + prog, path, report)
                for report in harness.ubsan_reports(p.stdout))
        results = parse_subunit(p.stdout)
        if not results or (p.returncode != 0 and
                           'fail' not in results.values()):
            res.add('fail', 'unit.%s' % prog, 'exit %d: %s' %
                    (p.returncode, p.stdout[-300:]))
        for name, status in sorted(results.items()):
            res.add(status, 'unit.%s.%s' % (prog, name))


def check_sanitizers(res, part):
    """One result per part of a sanitized run: a failure for each report
    its processes left since the last check, or a pass."""
    if not harness.SANITIZER_RUNTIMES:
        return
    reports = harness.SANITIZER_REPORTS[:]
    del harness.SANITIZER_REPORTS[:]
    for what, path, text in harness.SANITIZER_FOREIGN:
        res.add('knownfail', 'sanitizer.%s' % part, 'not in our code, '
                'in a process without our modules: %s, %s:\n    %s' % (
                    what, os.path.basename(path),
                    harness.sanitizer_report_head(text)))
    del harness.SANITIZER_FOREIGN[:]
    for what, path, text in reports:
        res.add('fail', 'sanitizer.%s' % part, '%s, %s:\n    %s' % (
            what, os.path.basename(path),
            harness.sanitizer_report_head(text)))
    if not reports:
        res.add('pass', 'sanitizer.%s' % part)


def run_slowfs_tests(res, bindir):
    binary = os.path.join(bindir, 'selftest', 'slowfs', 'slowfs')
    script = os.path.join(HERE, 'slowfs', 'test_slowfs.sh')
    if not os.path.exists(script):
        return
    if not os.path.exists(binary):
        res.add('fail', 'slowfs', 'slowfs not built (libfuse3-dev missing?)')
        return
    p = subprocess.run(['bash', script, binary], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True,
                       timeout=600)
    seen = 0
    for line in p.stdout.splitlines():
        m = re.match(r'^(ok|FAIL|skip): ([^:]+)(?::\s*(.*))?$', line)
        if not m:
            continue
        seen += 1
        status = {'ok': 'pass', 'FAIL': 'fail', 'skip': 'skip'}[m.group(1)]
        res.add(status, 'slowfs.' + m.group(2).strip(), m.group(3) or '')
    if p.returncode != 0 and seen == 0:
        res.add('fail', 'slowfs', p.stdout[-500:])


def xfs_usable():
    with open('/proc/filesystems') as f:
        return (shutil.which('mkfs.xfs') is not None and
                any(line.split()[-1] == 'xfs' for line in f))


def bench_smoke_runs(bench_dir):
    """(name, command, whether it needs XFS) of each quick benchmark
    run."""
    runs = []
    for script in sorted(os.listdir(bench_dir)):
        if not (script.startswith('bench') and script.endswith('.py')):
            continue
        cmd = [sys.executable, os.path.join(bench_dir, script), '--quick']
        if script == 'bench.py':
            cmd.append('--no-count-enters')
            runs.append(('bench.bench_xfs_runs', cmd + [
                '--storage', 'xfs', '--workloads', 'read,write,list'],
                True))
        runs.append(('bench.%s_runs' % script[:-3], cmd, False))
    return runs


def run_bench_smoke(res):
    """Each benchmark of make bench runs once with --quick: a benchmark
    nobody runs stops working unnoticed.  Only that it completes and
    reports is checked, never a time."""
    for name, cmd, needs_xfs in bench_smoke_runs(os.path.join(HERE, 'bench')):
        if needs_xfs and not xfs_usable():
            res.add('skip', name, 'no mkfs.xfs or no xfs in this kernel')
            continue
        start = time.monotonic()
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=600)
        except subprocess.TimeoutExpired:
            res.add('fail', name, 'no report within 600 s')
            continue
        print('ran %-28s %6.1fs' % (name, time.monotonic() - start),
              flush=True)
        if p.returncode != 0 or 'written to ' not in p.stdout:
            res.add('fail', name, 'rc %d: %s' % (p.returncode,
                                                 p.stdout[-400:]))
        else:
            res.add('pass', name)


def run_torture(smbd, env, spec, timeout):
    """Run one suite; "@variant" in the spec selects <env>_<variant>."""
    suite, *extra = spec.split()
    share = env
    for arg in [a for a in extra if a.startswith('@')]:
        share = '%s_%s' % (env, arg[1:])
        extra.remove(arg)
    cmd = ['smbtorture', smbd.unc(share), '-p', str(smbd.port),
           '-U', smbd.creds(), '--target=samba3', '--format=subunit'] + \
        extra + [suite]
    start = time.time()
    try:
        # base.casetable and base.utable print names that are no UTF-8
        p = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT,
                           universal_newlines=True, errors='replace',
                           timeout=timeout)
        out, rc = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors='replace') \
            if isinstance(e.stdout, bytes) else (e.stdout or '')
        rc = 'timeout'
    return env, spec, out, rc, time.time() - start


def test_name(suite, name):
    """smbtorture names the tests of a suite relative to it, and a single
    test run as a suite (smb2.lease.breaking4) by its own last part
    (raw.lock has a test named lock: raw.lock.lock)."""
    if suite.count('.') > 1 and suite.endswith('.' + name):
        return suite
    return '%s.%s' % (suite, name)


def classify_torture(res, runs, knownfail, flapping):
    """Compare each environment with the default one."""
    default = {}
    for (env, suite), (results, _rc) in runs.items():
        if env == 'default':
            for name, st in results.items():
                default[test_name(suite, name)] = st
    # lines "<env>/<suite>.<test>": known failures of one environment
    per_env = [(rx, why) for rx, why in knownfail if '/' in rx.pattern]
    for (env, suite), (results, rc) in sorted(runs.items()):
        if rc == 'timeout':
            # The tests after the one that hung never ran: a known failure
            # among those that did must not hide that.
            res.add('fail', '%s/%s' % (env, suite),
                    'smbtorture timed out after %d results' % len(results))
        elif not results or (rc != 0 and 'fail' not in results.values()):
            res.add('fail', '%s/%s' % (env, suite),
                    'smbtorture exit %s without results' % rc)
        for name, st in sorted(results.items()):
            full = test_name(suite, name)
            status, why = judge(env, st, default.get(full),
                                match(knownfail, full), match(flapping, full),
                                match(per_env, '%s/%s' % (env, full)))
            res.add(status, '%s/%s' % (env, full), why)


def run_env_suites(smbd, env, suites, timeout):
    """Suites of one environment run one after the other: they share its
    directory, and timing-sensitive tests (notify) must not compete."""
    return [run_torture_once_more_if_hung(smbd, env, spec, timeout)
            for spec in suites]


def run_torture_once_more_if_hung(smbd, env, spec, timeout):
    """A suite that hangs is run a second time, and the hang is reported.

    smbtorture has no request timeout, so one lost notify (seen once in
    smb2.notify.basedir on the default environment, under CI load) stops
    the whole suite.  A second hang is a failure."""
    env, spec, out, rc, secs = run_torture(smbd, env, spec, timeout)
    if rc != 'timeout':
        return env, spec, out, rc, secs, None
    hung = last_started(out)
    print('%s on %s hung in %s; running it again' % (spec, env, hung),
          flush=True)
    env, spec, out, rc, more = run_torture(smbd, env, spec, timeout)
    return env, spec, out, rc, secs + more, hung


def last_started(subunit):
    tests = [ln[len('test: '):].strip() for ln in subunit.splitlines()
             if ln.startswith('test: ')]
    return tests[-1] if tests else '(no test started)'


def run_torture_suites(res, smbd, plan, jobs, timeout, outdir):
    """plan: environment -> the suites to run there."""
    runs = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futs = [pool.submit(run_env_suites, smbd, e, suites, timeout)
                for e, suites in plan.items()]
        for fut in concurrent.futures.as_completed(futs):
            for env, spec, out, rc, secs, hung in fut.result():
                suite = spec.split()[0]
                if hung and rc != 'timeout':
                    res.add('knownfail', '%s/%s' % (env, suite),
                            'hung once in %s, then completed' % hung)
                with open(os.path.join(outdir, '%s.%s.subunit' %
                                       (env, suite)), 'w') as f:
                    f.write(out)
                results = parse_subunit(out)
                runs[(env, suite)] = (results, rc)
                print('ran %-20s on %-14s %5.1fs %3d tests' %
                      (suite, env, secs, len(results)), flush=True)
    # Known failures are per Samba release: knownfail for the installed
    # one, knownfail.<series> for another (make test SAMBA=<series>).
    kf = 'knownfail.' + harness.SAMBA if harness.SAMBA else 'knownfail'
    classify_torture(res, runs,
                     read_patterns(os.path.join(HERE, kf)),
                     read_patterns(os.path.join(HERE, 'flapping')))


def read_list(path):
    with open(path) as f:
        return [ln.split('#')[0].strip() for ln in f
                if ln.split('#')[0].strip()]


def torture_plan(envs, quick, full, full_envs):
    """The quick suites on every environment; with the full set, its
    suites too on the environments where they can tell something."""
    plan = {e: list(quick) for e in envs}
    for e in envs:
        if e in full_envs:
            plan[e] += [s for s in full if s not in quick]
    return plan


def smbtorture_suites():
    """The smb2, raw and base suites this smbtorture has, from --list
    (which names every test: suite.test...)."""
    out = subprocess.run(['smbtorture', '--list'], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True,
                         timeout=60).stdout
    return sorted({'.'.join(ln.split('.')[:2]) for ln in out.splitlines()
                   if re.match(r'^(smb2|raw|base)\.', ln)})


def every_suite_is_listed(res):
    """Each smb2, raw and base suite is run (tests.list, tests-full.list)
    or says why not (tests-not-run.list), and no list names one that this
    smbtorture lacks."""
    listed = {}
    for name in (QUICK_LIST, FULL_LIST, NOT_RUN_LIST):
        for spec in read_list(os.path.join(HERE, name)):
            listed.setdefault(spec.split()[0], []).append(name)
    with open(os.path.join(HERE, NOT_RUN_LIST)) as f:
        no_reason = [ln.split()[0] for ln in f if ln.strip() and
                     not ln.startswith('#') and
                     not ln.partition('#')[2].strip()]
    have = smbtorture_suites()
    missing = [s for s in have if not any(
        n == s or n.startswith(s + '.') for n in listed)]
    unknown = [n for n in listed if not any(
        n == s or n.startswith(s + '.') for s in have) and
        n.split('.')[0] in ('smb2', 'raw', 'base')]
    twice = [n for n, where in listed.items()
             if NOT_RUN_LIST in where and len(where) > 1]
    if missing or unknown or twice or no_reason:
        res.add('fail', 'torture.every_suite_is_listed',
                'in no list: %s; not in smbtorture: %s; run and not run: '
                '%s; not run without a reason: %s' %
                (missing, unknown, twice, no_reason))
    else:
        res.add('pass', 'torture.every_suite_is_listed')


def run_on_shared_smbd(res, mod, smbd):
    testlib.run_tests(res, mod.PREFIX, smbd, mod.SHARED,
                      known=getattr(mod, 'KNOWN', None))


def planned(parts, chosen, envs):
    """The names of the smbd, faults and cluster parts' tests, in the
    order they run."""
    names = []
    for part, mods in (('faults', OWN_SMBD_TESTS),
                       ('cluster', CLUSTER_TESTS)):
        if part in parts:
            for mod in chosen(mods):
                names += testlib.planned(mod.PREFIX, mod.SERVERS)
    if 'smbd' in parts:
        for mod in chosen(SHARED_SMBD_TESTS):
            names += [testlib.test_name(mod.PREFIX, t, e) for t, e in
                      testlib.each_env(mod.SHARED, envs)]
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--bindir', default=harness.BIN)
    ap.add_argument('--env', help='comma-separated environments '
                    '(default: all)')
    ap.add_argument('--suites', help='comma-separated smbtorture suites '
                    '(default: selftest/tests.list, with --full also '
                    'tests-full.list)')
    ap.add_argument('--full', action='store_true',
                    help='the full set: also the suites of '
                    'selftest/tests-full.list, on the environments of '
                    'FULL_SET_ENVS (make test-full)')
    ap.add_argument('--only', action='append',
                    help='run only these parts (comma-separated or given '
                    'more than once): %s' % ','.join(PARTS))
    ap.add_argument('--files', help='comma-separated test files of the '
                    'smbd, faults and cluster parts, e.g. fault_tests '
                    '(default: all)')
    ap.add_argument('--jobs', type=int, default=2)
    ap.add_argument('--timeout', type=int,
                    help='per smbtorture suite, seconds (default 300, with '
                    '--full 600: the slowest of tests.list takes about 80, '
                    'smb2.lease of the full set 185 on the default '
                    'environment)')
    ap.add_argument('--keep', action='store_true',
                    help='keep the smbd work dir')
    ap.add_argument('--list', action='store_true',
                    help='print the names of the smbd, faults and '
                    'cluster parts\' tests this run would run (with --only, '
                    '--files, --env), and run nothing')
    args = ap.parse_args()
    if os.geteuid() != 0 and not args.list:
        sys.exit('selftest: must run as root (it creates test users and '
                 'a mount namespace)')

    parts = [p for o in args.only or [] for p in o.split(',') if p] or PARTS
    for p in parts:
        if p not in PARTS:
            ap.error('--only: no part %r (parts: %s)' % (p, ','.join(PARTS)))
    envs = args.env.split(',') if args.env else list(harness.ENVIRONMENTS)
    if 'default' not in envs and 'torture' in parts:
        envs.insert(0, 'default')
    files = args.files.split(',') if args.files else None
    chosen = lambda mods: [m for m in mods
                           if files is None or m.__name__ in files]
    if args.list:
        for name in planned(parts, chosen, envs):
            print(name)
        return 0
    if harness.SANITIZER_RUNTIMES:
        # what this run's processes reported, and nothing older
        shutil.rmtree(harness.SANITIZER_KEEP, ignore_errors=True)
        print('selftest: sanitized build %s: smbd runs with %s preloaded' %
              (args.bindir, ' '.join(harness.SANITIZER_RUNTIMES)),
              flush=True)
    if args.suites:
        plan = torture_plan(envs, args.suites.split(','), [], [])
    else:
        plan = torture_plan(
            envs, read_list(os.path.join(HERE, QUICK_LIST)),
            read_list(os.path.join(HERE, FULL_LIST)) if args.full else [],
            FULL_SET_ENVS)
    outdir = os.path.join(args.bindir, 'selftest-results')
    os.makedirs(outdir, exist_ok=True)

    # Own tests known to fail on another release (knownfail-own.<series>)
    res = Results(read_patterns(os.path.join(
        HERE, 'knownfail-own.%s' % harness.SAMBA)) if harness.SAMBA else ())
    if args.timeout is None:
        args.timeout = 600 if args.full else 300
    if harness.SAMBA:
        print('selftest: Samba %s in its chroot (%s), build %s' %
              (harness.SAMBA, harness.runtime_root(), args.bindir),
              flush=True)
    if 'build' in parts:
        build_tests.run_all(res)
    if 'unit' in parts:
        run_unit_tests(res, args.bindir)
        check_sanitizers(res, 'unit')
    if 'slowfs' in parts:
        run_slowfs_tests(res, args.bindir)
    if 'bench' in parts:
        run_bench_smoke(res)
    if 'package' in parts and getattr(harness, 'SAMBA', None):
        res.add('skip', 'package', 'the package test is for the installed '
                'Samba; make deb builds only that flavour today')
    elif 'package' in parts:
        package_tests.run_all(res)
    for part, mods in (('faults', OWN_SMBD_TESTS),
                       ('cluster', CLUSTER_TESTS)):
        if part in parts:
            for mod in chosen(mods):
                testlib.run_all(res, mod.PREFIX, mod.SERVERS)
                check_sanitizers(res, mod.__name__)
    smbd = None
    if 'smbd' in parts or 'torture' in parts:
        smbd = harness.Smbd(envs={e: harness.ENVIRONMENTS[e]
                                  for e in envs},
                            extra_global=SMBD_GLOBAL,
                            log_level=harness.LOG_LEVEL)
        smbd.start()
        print('selftest: smbd pid %d on 127.0.0.1:%d, work dir %s' %
              (smbd.proc.pid, smbd.port, smbd.dir), flush=True)
    try:
        if 'smbd' in parts:
            for mod in chosen(SHARED_SMBD_TESTS):
                run_on_shared_smbd(res, mod, smbd)
        if 'torture' in parts:
            if not args.suites:
                every_suite_is_listed(res)
            run_torture_suites(res, smbd, plan, args.jobs, args.timeout,
                               outdir)
    finally:
        if smbd is not None:
            smbd.stop()
            for line in smbd.panics():
                res.add('fail', 'smbd-panic', line)
            check_sanitizers(res, 'shared_smbd')
            if not args.keep and res.failed == 0:
                smbd.cleanup()
            else:
                print('selftest: smbd work dir kept: %s' % smbd.dir)
    with open(os.path.join(outdir, 'results.txt'), 'w') as f:
        f.write('\n'.join(res.lines) + '\n')
    print('selftest: all results in %s' % outdir)
    # CI logs keep only their tail: repeat what failed next to the count.
    for line in res.lines:
        if line.startswith('fail:'):
            print(line)
    print('%d passed, %d failed, %d skipped' %
          (res.passed, res.failed, res.skipped))
    return 1 if res.failed else 0


if __name__ == '__main__':
    sys.exit(main())
