"""speechbrain-rfcx: bird and frog species detection on SpeechBrain."""

__version__ = "0.1.0"
