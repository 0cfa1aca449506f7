"""The U-Net: builder (Keras), geometry (pure arithmetic) and model files."""
