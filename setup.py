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
    packages=find_packages(include=["speechbrain_rfcx", "speechbrain_rfcx.*"]),
    install_requires=[
        "speechbrain>=1.1.2",
        "torch>=2.1",
        "torchaudio>=2.1",
        "torchvision",
        "hyperpyyaml>=1.2",
        "timm>=0.9",
        "iterative-stratification>=0.1.7",
        "numpy",
        "pandas>=1.5",
        "soundfile>=0.12",
        "tqdm",
        "tensorboard",
        "matplotlib",
    ],
    extras_require={"dev": ["pytest>=7", "scikit-learn>=1.2", "ruff"]},
    entry_points={
        "console_scripts": [
            "rfcx-synth=speechbrain_rfcx.data.synthetic:main",
            "rfcx-import=speechbrain_rfcx.data.import_tables:main",
            "rfcx-prepare=speechbrain_rfcx.data.prepare:main",
            "rfcx-detect=speechbrain_rfcx.cli:detect",
            "rfcx-submit=speechbrain_rfcx.cli:submit",
            "rfcx-evaluate=speechbrain_rfcx.evaluation:main",
        ]
    },
)
