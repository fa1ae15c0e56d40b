.PHONY: demo test bench
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
bench:
	bash scripts/bootstrap.sh test && for b in benchmarks/bench_*.py; do .venv/bin/python $$b; done
