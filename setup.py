"""Install the kit's packages and its console entry point `transfer-kit`.

The versions are pinned in requirements.txt; the kit's Makefile installs them
with `pip install --no-deps -r requirements.txt` first.
"""
from pathlib import Path

from setuptools import setup


def direct_requirements():
    """Return the pins marked `# direct` in requirements.txt."""
    lines = Path(__file__).with_name("requirements.txt").read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.rstrip().endswith("direct") or "# direct" in ln]


setup(
    name="transfer-kit",
    version="0.1.0",
    description="Re-run Yosinski et al. 2014 'How transferable are features in deep neural networks?' in real Caffe",
    python_requires=">=3.11",
    packages=["kitcore", "data_prep", "generators", "runner", "analysis", "caffe_build"],
    package_data={"runner": ["slurm.toml"],
                  "caffe_build": ["*.sh", *(f"patches/{purpose}/*.patch"
                                            for purpose in ("base", "speed", "dnnl", "opencv", "cuda"))]},
    install_requires=direct_requirements(),
    entry_points={"console_scripts": ["transfer-kit=runner.cli:main"]},
)
