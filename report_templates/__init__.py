"""Jinja2 templates and CSS for the HTML report, shipped as package data."""
