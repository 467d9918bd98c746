"""Venue adapters. ``filters`` holds the venue's symbol rules; execution adapters come with issue 3."""
