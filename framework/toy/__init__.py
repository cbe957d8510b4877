"""The analytic toys: closed-form 2-D point and token distributions with exact guided targets, used by
``polyguide demo --toy``, the toy recipes and the guidance proofs.
"""
