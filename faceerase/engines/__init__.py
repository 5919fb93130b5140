"""Engines that erase many inputs: a list of files (one process or Ray) and Hugging Face datasets."""
