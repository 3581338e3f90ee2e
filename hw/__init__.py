"""dfx.hw"""
