# Shortcuts for people; CI runs scripts/test.sh directly.
.PHONY: run test lint fmt bench

run:
	cargo run --release --bin roost -- serve --cpe-auth open

test:
	scripts/test.sh

lint:
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

bench:
	scripts/bench.sh
