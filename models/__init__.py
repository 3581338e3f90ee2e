"""dfx.models"""
