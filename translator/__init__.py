"""Synapse configuration -> MAS configuration: mapping rules, fresh secrets, writer, Synapse overlay."""
