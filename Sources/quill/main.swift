print("quill")
