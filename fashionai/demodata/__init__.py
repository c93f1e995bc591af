"""Generated FashionAI-format data for the demo and the tests: images drawn from scratch, written
in the competition's layout (`generate`), from figures and garments (`scenes`, `drawing`). Apart
from the real data pipeline in `fashionai.data`: nothing there depends on it."""
