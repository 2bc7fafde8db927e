"""Image maths: Fourier transforms, the CTF, cross-correlation, filters and estimators."""
