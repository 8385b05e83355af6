"""tritium.hw"""
