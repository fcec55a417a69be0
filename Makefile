# The two commands of the README, and a few more for developers.
.PHONY: run test test-unit test-fast bench lint

run:            ## set up everything and run the panel with a local balancer
	scripts/run

test:           ## every test tier: unit, integration (Redis + Celery), kernel (IPVS VM), browser
	scripts/test

test-unit:      ## the fast tier only
	scripts/test tests/unit

test-fast:      ## the fast tier's tests that need no database (tests/unit/conftest.py marks the others), in seconds
	.venv/bin/pytest -q -p no:cacheprovider -m "not database" tests/unit

bench:          ## benchmarks: the agent in the IPVS VM against ipvsadm (and its /metrics against node_exporter), the pages small vs large
	scripts/bench

lint:           ## ruff, the layers of DESIGN.md §8 as import-linter contracts, djlint on the templates (pyproject.toml)
	.venv/bin/ruff check .
	.venv/bin/lint-imports --no-cache --no-logo
	.venv/bin/djlint templates --check --lint
