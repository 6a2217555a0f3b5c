"""Labeling simulations: oracle annotators drive the real queue, triggers, gate and swaps on scratch project copies.

Each (strategy, seed) run copies the project's items (less a held-out test split) and their
features into a scratch project with the same labels and settings, lets N scratch annotators
label through ``queue_next`` / ``annotation_submit`` with the oracle's answers, runs the count
trigger after every label and executes what it requests synchronously (train, gate, swap, and
the rescoring that a swap asks for), and records a learning curve on
the test split: a model fitted on every label so far, and the model live at that moment.
Before a model is live a client's /predict gets no answer; the live curve then counts the
accuracy of answering the most frequent label so far, the baseline the first model must beat.
Some annotators may turn noisy part way (``noisy_annotators`` from ``noisy_from``): they answer
uniformly at random over the labels. Every draw follows the seed: runs with the same seeds
record the same curves.

A run is one database transaction, rolled back at its end: no other process ever sees the
scratch project, and the task messages its services queue after commit are never sent, so a
worker cannot race the run and no broker is needed. The price: on SQLite the run holds the
write lock while it lasts, so simulate when nobody is labeling there.
"""
