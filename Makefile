# SPDX-License-Identifier: GPL-3.0-or-later
# Thin front end to the waf build (buildtools/waf runs the waf shipped in
# the prepared Samba source) and to the selftest.
#
#   make            install missing packages, prepare Samba, build
#   make test       the selftest; ends with "N passed, N failed, N skipped"
#   make test-full  the same with the full smbtorture set (docs/testing.md
#                   says which suites are in which set)
#   make test-sanitize
#                   the unit tests and our own test files with the modules,
#                   engine and unit tests built with ASan and UBSan (in
#                   bin-sanitize); make test SANITIZE=1 runs TESTARGS so;
#                   make test-sanitize-quick is the part CI runs
#   make run        a private smbd on 127.0.0.1:$(RUN_PORT) with our modules
#   make deb        the Debian package in bin/deb/, checked with lintian
#   make bench      side-by-side benchmarks (see selftest/bench)
#   make install    into the modules dir smbd -b reports (honours DESTDIR)
#
# SAMBA=<series> (e.g. make SAMBA=4.22, make test SAMBA=4.22) does the same
# for another Samba release, beside the installed one: its smbd runs in a
# cached Debian chroot (buildtools/prepare-chroot.sh), the modules build
# inside it into bin-<series>, and the selftest runs that smbd.  The
# default is the installed smbd.  See docs/samba-versions.md.

PYTHON ?= /usr/bin/python3
WAF = $(PYTHON) buildtools/waf
RUN_PORT ?= 44445
TESTARGS ?=
# The sanitized build lives in its own waf out dir with its own lock file,
# so that it never touches bin/ (what make, make test and make install use).
SANITIZE ?=
SANITIZE_OUT = bin-sanitize
SANITIZE_WAF = WAFLOCK=.lock-waf_sanitize_build $(WAF)
SANITIZE_TESTARGS ?= --only unit,smbd,faults
# What CI adds to make test (.ci/run): the unit tests and the requests in
# flight at cancel, tree disconnect, logoff, disconnect and server stop
SANITIZE_QUICK_TESTARGS ?= --only unit,faults --files inflight_tests
ifeq ($(SANITIZE),1)
# the harness preloads the sanitizer runtimes into smbd and fails the run
# on any report when its build dir is a sanitized one
TEST_BUILD = build-sanitize
TEST_ENV = ASVFS_BIN=$(CURDIR)/$(SANITIZE_OUT)
else
TEST_BUILD = build
TEST_ENV =
endif
BENCHARGS ?=

SAMBA ?=

# make bench, for every release: bench.py (data path and listings;
# BENCHARGS narrows it), then each module's own bench_<module>.py (only
# --quick is passed on to them)
define BENCH_ALL
$(PYTHON) selftest/bench/bench.py $(BENCHARGS)
@for b in selftest/bench/bench_*.py; do \
	[ -e "$$b" ] || continue; \
	echo "$(PYTHON) $$b $(filter --quick,$(BENCHARGS))"; \
	$(PYTHON) "$$b" $(filter --quick,$(BENCHARGS)) || exit 1; \
done
endef

.PHONY: all build configure bootstrap test test-full run bench install clean \
	distclean build-sanitize test-sanitize test-sanitize-quick

all: build

ifneq ($(SAMBA),)
# Everything runs inside the release's chroot, out dir bin-$(SAMBA), its own
# waf lock file; the selftest (host side) is told which release it tests.
export ASVFS_SAMBA = $(SAMBA)
export ASVFS_OUT = bin-$(SAMBA)
export WAFLOCK = .lock-waf_$(SAMBA)_build
IN_RUNTIME = bash buildtools/in-runtime.sh --samba $(SAMBA) --
RUNTIME_TREE = $$(cat "$$(bash buildtools/prepare-chroot.sh --samba $(SAMBA))/.asvfs-samba-tree")

bin-$(SAMBA)/c4che/_cache.py: wscript buildtools/prepare-samba.sh buildtools/prepare-chroot.sh
	@bash buildtools/bootstrap.sh
	@bash buildtools/prepare-chroot.sh --samba $(SAMBA) >/dev/null
	$(IN_RUNTIME) python3 buildtools/waf configure \
		--with-samba-source=$(RUNTIME_TREE) $(CONFIGURE_ARGS)

configure:
	@bash buildtools/bootstrap.sh
	@bash buildtools/prepare-chroot.sh --samba $(SAMBA) >/dev/null
	$(IN_RUNTIME) python3 buildtools/waf configure \
		--with-samba-source=$(RUNTIME_TREE) $(CONFIGURE_ARGS)

build: bin-$(SAMBA)/c4che/_cache.py
	$(IN_RUNTIME) python3 buildtools/waf build

test: build
	$(PYTHON) selftest/selftest.py --bindir bin-$(SAMBA) $(TESTARGS)

run: build
	$(PYTHON) selftest/run.py --port $(RUN_PORT)

bench: build
	$(BENCH_ALL)

install:
	@echo "make install SAMBA=$(SAMBA): the chroot's build is for tests;" \
		"on a system whose smbd is $(SAMBA): make && make install" >&2
	@exit 1

clean:
	$(IN_RUNTIME) python3 buildtools/waf clean || true

distclean:
	rm -rf bin-$(SAMBA) $(WAFLOCK)
else

bootstrap:
	@bash buildtools/bootstrap.sh

bin/c4che/_cache.py: wscript buildtools/prepare-samba.sh
	@bash buildtools/bootstrap.sh
	./configure $(CONFIGURE_ARGS)

configure:
	@bash buildtools/bootstrap.sh
	./configure $(CONFIGURE_ARGS)

build: bin/c4che/_cache.py
	@bash buildtools/bootstrap.sh
	$(WAF) build

$(SANITIZE_OUT)/c4che/_cache.py: bin/c4che/_cache.py wscript
	$(SANITIZE_WAF) configure --out=$(SANITIZE_OUT) --sanitize \
		--with-samba-source="$$(cat bin/samba-source)" $(CONFIGURE_ARGS)

build-sanitize: build $(SANITIZE_OUT)/c4che/_cache.py
	$(SANITIZE_WAF) build

test: $(TEST_BUILD)
	$(TEST_ENV) $(PYTHON) selftest/selftest.py $(TESTARGS)

test-sanitize:
	$(MAKE) test SANITIZE=1 TESTARGS="$(SANITIZE_TESTARGS)"

test-sanitize-quick:
	$(MAKE) test SANITIZE=1 TESTARGS="$(SANITIZE_QUICK_TESTARGS)"

test-full: build
	$(PYTHON) selftest/selftest.py --full $(TESTARGS)

run: build
	$(PYTHON) selftest/run.py --port $(RUN_PORT)

bench: build
	$(BENCH_ALL)

install: build
	$(WAF) install --destdir="$(DESTDIR)"

clean:
	$(WAF) clean || true
	[ ! -e $(SANITIZE_OUT)/c4che ] || $(SANITIZE_WAF) clean || true

distclean:
	rm -rf bin $(SANITIZE_OUT) .lock-waf*
endif

# The Debian package, built in a clean copy of the source (bin/deb/), so it
# needs no make build.  SAMBA=<series> names the flavour: only the
# installed Samba's today; SAMBA=4.22 will build inside that release's
# build root once the Samba 4.22 port (issue 21) provides one, and until
# then build-deb.sh says so and stops.  Kept outside any SAMBA=<series>
# conditional, so that make deb SAMBA=4.22 reaches build-deb.sh.
.PHONY: deb
deb:
	@bash buildtools/bootstrap.sh
	bash buildtools/build-deb.sh $(if $(SAMBA),--samba $(SAMBA))
