# Thin front end to the waf build (buildtools/waf runs the waf shipped in
# the prepared Samba source) and to the selftest.
#
#   make            install missing packages, prepare Samba, build
#   make test       the selftest; ends with "N passed, N failed, N skipped"
#   make test-full  the same with the full smbtorture set (the README's
#                   Testing section says which suites are in which set)
#   make run        a private smbd on 127.0.0.1:$(RUN_PORT) with our modules
#   make deb        the Debian package in bin/deb/, checked with lintian
#   make bench      side-by-side benchmarks (see selftest/bench)
#   make install    into the modules dir smbd -b reports (honours DESTDIR)

PYTHON ?= /usr/bin/python3
WAF = $(PYTHON) buildtools/waf
RUN_PORT ?= 44445
TESTARGS ?=
BENCHARGS ?=

.PHONY: all build configure bootstrap test test-full run bench install clean \
	distclean

all: build

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

test-full: build
	$(PYTHON) selftest/selftest.py --full $(TESTARGS)

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
