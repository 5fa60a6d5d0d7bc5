"""Make ``import deqformer`` work from a source checkout (models/ on sys.path) without installing."""
import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "models"
if str(MODELS) not in sys.path:
    sys.path.insert(0, str(MODELS))
