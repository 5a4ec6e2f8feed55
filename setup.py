"""speechbrain-rfcx: species detection in soundscapes on SpeechBrain."""

from setuptools import find_packages, setup

setup(
    name="speechbrain-rfcx",
    version="0.1.0",
    description=(
        "Sound-event detection of bird and frog species in soundscape "
        "recordings (RFCX format) on SpeechBrain"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    # the top-level hparams/ blocks install as speechbrain_rfcx.hparams
    packages=find_packages(include=["speechbrain_rfcx", "speechbrain_rfcx.*"])
    + ["speechbrain_rfcx.hparams"],
    package_dir={"speechbrain_rfcx.hparams": "hparams"},
    package_data={"speechbrain_rfcx.hparams": ["*/*.yaml"]},
    install_requires=[
        # SEDBrain overrides Brain._wrap_distributed, a private method: the
        # minor version it was written against
        "speechbrain>=1.1.2,<1.2",
        "torch>=2.7.1",  # speechbrain 1.1.2's own floor
        "torchaudio>=2.7.1",
        "torchvision>=0.22.1",  # timm's layers need torchvision.ops
        "hyperpyyaml>=1.2",
        "ruamel.yaml>=0.17",  # detector.yaml is read and written with it
        "timm>=0.9",
        "iterative-stratification>=0.1.7",
        "numpy",
        "pandas>=1.5",
        "scipy",  # the CPU log-mel's FFT (SpeechBrain needs it too)
        "soundfile>=0.12",
        "tqdm",
    ],
    extras_require={
        "train": ["tensorboard"],  # the recipes' TensorboardLogger
        "plot": ["matplotlib"],  # rfcx-detect --plot, rfcx-evaluate --plot
        "parquet": ["pyarrow"],  # rfcx-detect --embeddings as Parquet
        "dev": [
            "pytest>=7",
            "scikit-learn>=1.2",
            "ruff",
            "tensorboard",
            "matplotlib",
            "pyarrow",
        ],
    },
    entry_points={
        "console_scripts": [
            "rfcx-synth=speechbrain_rfcx.data.synthetic:main",
            "rfcx-import=speechbrain_rfcx.data.import_tables:main",
            "rfcx-prepare=speechbrain_rfcx.data.prepare:main",
            "rfcx-detect=speechbrain_rfcx.cli:detect",
            "rfcx-submit=speechbrain_rfcx.cli:submit",
            "rfcx-evaluate=speechbrain_rfcx.evaluation:main",
            "rfcx-hparams=speechbrain_rfcx.hparams:main",
        ]
    },
)
