"""Shared pytest setup: makes tests/lib importable (`from guest import Guest`)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
