"""precision-pain: pharmacogenomics-aware treatment-response models for chronic-pain research.

Research software, not a medical device: its outputs are not clinical advice.
"""

__version__ = "0.1.0"

RESEARCH_NOTICE = (
    "Research use only. precision-pain is research software, not a medical device; "
    "its outputs are not clinical advice and must not guide the care of individual patients."
)
