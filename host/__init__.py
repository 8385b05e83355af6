"""tritium.host"""
