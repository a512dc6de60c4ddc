# Thin front end to the waf build (buildtools/waf runs the waf shipped in
# the prepared Samba source) and to the selftest.
#
#   make            install missing packages, prepare Samba, build
#   make test       the selftest; ends with "N passed, N failed, N skipped"
#   make run        a private smbd on 127.0.0.1:$(RUN_PORT) with our modules
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
BENCHARGS ?=

SAMBA ?=

.PHONY: all build configure bootstrap test run bench install clean distclean

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
	$(PYTHON) selftest/bench/bench.py $(BENCHARGS)

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

test: build
	$(PYTHON) selftest/selftest.py $(TESTARGS)

run: build
	$(PYTHON) selftest/run.py --port $(RUN_PORT)

# bench.py: data path and listings (BENCHARGS narrows it); then each
# module's own bench_<module>.py (only --quick is passed on to them)
bench: build
	$(PYTHON) selftest/bench/bench.py $(BENCHARGS)
	@for b in selftest/bench/bench_*.py; do \
		[ -e "$$b" ] || continue; \
		echo "$(PYTHON) $$b $(filter --quick,$(BENCHARGS))"; \
		$(PYTHON) "$$b" $(filter --quick,$(BENCHARGS)) || exit 1; \
	done

install: build
	$(WAF) install --destdir="$(DESTDIR)"

clean:
	$(WAF) clean || true

distclean:
	rm -rf bin .lock-waf*
endif
