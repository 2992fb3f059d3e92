# ninelives — every target does its own set-up, so a fresh clone needs only `make run`
# or `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
JARS := .cache/jars
CDS := .cache/cds/child.jsa
CRASHFS := .cache/crashfs/ninelives-crashfs.jar
STORAGE := $(JARS)/ninelives-storage.jar
ROWS ?= 10000000
export NINELIVES_JARS_DIR := $(CURDIR)/$(JARS)
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(CURDIR)/$(BIN)/python

.PHONY: setup run test crash soak lint lock bench clean java tools

setup: java $(BIN)/.installed $(JARS)/.resolved $(STORAGE) tools

# Servers and a browser the ops tests drive for real: a Prometheus Pushgateway and
# headless Chromium, from Debian. Skipped when present; tests skip with a reason
# where they cannot be installed (no root, no apt).
tools:
	@if ! command -v prometheus-pushgateway >/dev/null || ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      prometheus-pushgateway chromium >/dev/null) || echo "ninelives: could not install pushgateway/chromium; their tests will skip" >&2; \
	  else echo "ninelives: pushgateway/chromium missing and not root; their tests will skip" >&2; fi; \
	fi

# One clear line instead of a JVM stack trace when Java is missing or too old.
java:
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1); \
	if [ -z "$$v" ] || [ "$$v" -lt 17 ]; then \
	  echo "ninelives: Java 17 or newer is required (found: $${v:-none}); install openjdk-17-jdk and retry" >&2; exit 1; fi

# Every package at the version in conf/constraints.txt (dev tools included), so a fresh
# clone tests and lints exactly as CI does.
$(BIN)/.installed: pyproject.toml conf/constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c conf/constraints.txt -e '.[dev]'
	@touch $@

# After changing pyproject.toml's dependencies: pin them all again (uv resolves).
lock: $(BIN)/.installed
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --extra bench --python-version 3.11 \
	  --custom-compile-command "make lock" -o conf/constraints.txt

# The JVM half pyspark lacks (Delta, S3A, Avro: conf/delta-jars.pom.xml). Spark's Ivy
# resolver trips over a ~/.m2 that holds a POM without its jar (common on machines that
# ran Maven before), so Maven itself resolves the jars into a project folder and the
# session passes them as spark.jars. Without this folder the session falls back to
# configure_spark_with_delta_pip (plain internet access). A jar whose artifact pyspark
# already ships (in any version) is left out: pyspark's copy is first on the class path,
# so a second one is dead weight, and an unshaded hadoop-common beside pyspark's shaded
# Hadoop client would be worse. The folder is emptied first, so a jar that is no longer
# wanted does not linger.
PYSPARK_JARS = $$($(BIN)/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/jars
$(JARS)/.resolved: conf/delta-jars.pom.xml $(BIN)/.installed
	@command -v mvn >/dev/null || { echo "ninelives: Maven (mvn) is required by make setup to fetch the Delta jars" >&2; exit 1; }
	@mkdir -p $(JARS) && rm -f $(JARS)/*.jar $@
	shipped=$$(ls "$(PYSPARK_JARS)" | sed -E 's/-[0-9].*$$//' | sort -u | paste -sd, -); \
	mvn -q -f conf/delta-jars.pom.xml dependency:copy-dependencies \
	  -DoutputDirectory=$(CURDIR)/$(JARS) -DincludeScope=runtime \
	  -DexcludeGroupIds=org.scala-lang,org.slf4j,org.apache.logging.log4j \
	  -DexcludeArtifactIds="$$shipped"
	@touch $@

# The project's own Delta log store for S3 (framework/lake/jvm), in the jar folder so
# that every session has it; compiled against pyspark's jars and the resolved ones.
STORAGE_SOURCES := $(wildcard framework/lake/jvm/ninelives/storage/*.java)
$(STORAGE): $(STORAGE_SOURCES) $(JARS)/.resolved
	@rm -rf .cache/storage-classes && mkdir -p .cache/storage-classes
	javac -nowarn --release 17 -d .cache/storage-classes \
	  -cp "$(PYSPARK_JARS)/*:$(JARS)/*" $(STORAGE_SOURCES)
	jar cf $@ -C .cache/storage-classes .

run: setup
	$(BIN)/ninelives seed --if-absent
	$(BIN)/ninelives run orders_daily --from 2024-01-01 --to 2024-01-07
	$(BIN)/ninelives run revenue_daily --from 2024-01-01 --to 2024-01-07

# Everything but the hours-long soak, the kill -9 suite included, on two pytest workers:
# a test spends much of its time waiting on a Spark or child-process round trip, so two
# of them share two cores well; work stealing keeps both busy to the end (the cluster
# test alone takes minutes). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: setup $(CRASHFS) $(CDS)
	$(BIN)/pytest -m "not soak" -n $(TEST_WORKERS) --dist worksteal --durations=15

# Only the kill -9 suite (also part of `make test`).
crash: setup $(CRASHFS) $(CDS)
	$(BIN)/pytest -m "not soak" -n $(TEST_WORKERS) --dist worksteal tests/test_crash.py

soak: setup $(CRASHFS) $(CDS)
	$(BIN)/pytest -m soak

# The classes a crash test's child JVM loads, dumped once by a normal child run and
# mapped by every child (class-data sharing; tests/jvm_archive.py). It is built in the
# background while the first tests run (its output: .cache/cds/build.log); a child that
# starts before it exists waits for it, and without it children only start slower.
$(CDS): $(BIN)/.installed $(JARS)/.resolved $(CRASHFS) tests/jvm_archive.py
	@$(BIN)/python -m tests.jvm_archive --background $@

# The crash kit's file system with crash points inside Delta's own commits and
# checkpoints (tests/jvm), compiled against the Hadoop that pyspark ships.
CRASHFS_SOURCES := $(wildcard tests/jvm/ninelives/crash/*.java)
$(CRASHFS): $(CRASHFS_SOURCES) $(BIN)/.installed
	@rm -rf $(@D)/classes && mkdir -p $(@D)/classes
	javac -nowarn -Xlint:-deprecation -d $(@D)/classes \
	  -cp "$$($(BIN)/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/jars/*" \
	  $(CRASHFS_SOURCES)
	jar cf $@ -C $(@D)/classes .

# The 30-date night, its recovery and its baselines; ROWS=1000000 for a quicker look.
# Results: bench/RESULTS.md and bench/results/ (see bench/README.md).
bench: setup $(BIN)/.bench-installed
	$(BIN)/python bench/bench.py --rows $(ROWS)

# matplotlib for the chart, only where the benchmark runs.
$(BIN)/.bench-installed: pyproject.toml $(BIN)/.installed
	$(BIN)/pip install -q -c conf/constraints.txt -e '.[dev,bench]'
	@touch $@

# The whole repository: the library, jobs, tests, bench and the notebooks (their
# Databricks builtins are declared in notebooks/ruff.toml). Also part of make test
# (tests/test_layers.py).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf lakehouse spark-warehouse metastore_db derby.log .pytest_cache
