.PHONY: demo test bench screenshots
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
bench:
	bash scripts/bootstrap.sh test && for b in benchmarks/bench_*.py; do .venv/bin/python $$b; done
screenshots:
	METERHUB_SCREENSHOTS=docs/img .venv/bin/python -m pytest -q tests/web/test_dashboard_browser.py
