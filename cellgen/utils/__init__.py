"""Input validation and small helpers shared across cellgen."""

from ._arrays import ChannelView, RowView, channel_view
from ._validation import check_channel_index, check_images, check_labels, check_n_samples

__all__ = ["check_images", "check_labels", "check_n_samples", "check_channel_index",
           "RowView", "ChannelView", "channel_view"]
